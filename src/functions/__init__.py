"""Lambda entry points other than the API: thin modules that import only what they use."""
