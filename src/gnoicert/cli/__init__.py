"""The `gnoicert` command: argument parsing, dispatch, output, hints and the demo."""
