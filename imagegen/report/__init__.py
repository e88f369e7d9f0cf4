"""Results of `imagegen test`: the data, the live console, JUnit XML, JSON and saved artifacts."""
