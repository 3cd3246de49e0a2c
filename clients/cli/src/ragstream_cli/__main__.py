"""`python -m ragstream_cli`, the same as the `ragstream` script."""

from ragstream_cli.main import app

app(prog_name="ragstream")
