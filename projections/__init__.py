"""The read side: read-model tables, the projectors that fill them, and the queries on them."""
