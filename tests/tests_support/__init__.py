"""Support code for the tests (fake steps registered only inside tests)."""
