"""What paykube's PSP emulators (Stripe, Razorpay) share: the clock, ids, injected faults
and held answers, webhook delivery with retries, the generic control endpoints and clients,
and the ways to run an emulator (in the caller's loop, in a thread, as a process).

Each PSP package keeps only what is its own: the API it emulates, its error shapes, its
signature scheme and its state machine.
"""
