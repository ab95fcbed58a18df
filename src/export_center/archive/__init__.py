"""Archives in and out: the deterministic writer every bundle uses, and the one safe reader
every import and ingestion goes through (traversal, link, device, duplicate and bomb guards
live there and nowhere else)."""
