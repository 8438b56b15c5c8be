"""Development and test tooling for paykube: the local platform and the Stripe emulator.

Nothing here ships in the product image; tests, benchmarks and `make demo` use it.
"""
