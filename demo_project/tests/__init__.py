"""Tests of the demo project: the data generator and the query benchmark."""
