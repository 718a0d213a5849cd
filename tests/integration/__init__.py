"""Integration scenarios: several components or processes at once."""
