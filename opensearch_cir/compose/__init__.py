"""Composed queries: strategies (vector maths), caption rewriting, and the query object."""
