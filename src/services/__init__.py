"""What the domain does: rules and invariants between the routers and the models."""
