"""One module per query family, mixed into `query.Executor`."""
