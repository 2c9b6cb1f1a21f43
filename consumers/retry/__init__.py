"""The retry worker: each tier's records held until due, then delivered again."""
