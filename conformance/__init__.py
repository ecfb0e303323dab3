"""conformance: Hypothesis suites that prove the hardened chain and catch the broken ones.

Layout:

* ``worlds``            strategies for small worlds and fault schedules (tapes), the race
                        runner, and the counterexample report (world, schedule, history, replay)
* ``conftest``          settings profiles ``ci`` / ``dev`` / ``thorough``; ``--protocol`` option
* ``test_races``        the hardened chain satisfies S1–S3 and L1 inside the timing model,
                        S3 outside it
* ``test_quality``      the suites have teeth: the documented chain and every canary are caught,
                        with a shrunk counterexample, within a stated example budget
* ``test_stateful``     adversarial steps against the pure protocol, S2/S3 after every step
* ``test_contract_*``   the HTTP and database clients against generated answers

Every race runs the verifier's own protocol through the simulator (``sim``): nothing here
decides ownership, so what is proven is the code that ships.
"""
