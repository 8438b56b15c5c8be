"""Payment service providers behind one small interface."""
