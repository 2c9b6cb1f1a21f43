"""The consumer workers: fanout/, delivery/ and retry/, on the shared consume_loop."""
