"""The gymnasium environment over test-time compute allocation."""
