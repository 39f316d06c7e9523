"""Lambda entry points other than the API's (template.yaml names each handler): thin modules that import
only what they use."""
