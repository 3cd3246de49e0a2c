"""The ragstream command line, a client of the public HTTP API only."""
