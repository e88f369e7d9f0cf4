"""The checks `imagegen test` runs against a booted lab image, each reading like the seed's own checks."""
