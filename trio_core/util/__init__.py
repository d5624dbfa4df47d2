"""Small pure helpers with no project imports: glob patterns, a rate limit, the log ring, network addresses."""
