"""Training scripts (Accelerate) for portrait-stylize styles. They use the library; it never uses them."""
