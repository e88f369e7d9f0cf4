"""A signed binary cache of store entries, shared over HTTP(S) or a directory (file://).

Like a Nix binary cache: each entry is a zstd-compressed tar archive named by its own digest plus a
small signed metadata file named by the entry's hash, written last, so an entry is present in a
cache exactly when its metadata is.

    <url>/imagegen-cache-info                   what this directory is (written on the first push)
    <url>/<hash>.entryinfo                      metadata: store path, digests, sizes, references, signatures
    <url>/archive/<sha256 of the file>.tar.zst  the entry's tree

push.py uploads entries, substitute.py fetches and verifies them for Store.realise, signing.py holds
the ed25519 keys, archive.py the deterministic archive, transport.py the HTTP and directory access.
"""
