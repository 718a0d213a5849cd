"""Helpers the tests share: catalog assertions and a streaming replica pair."""
