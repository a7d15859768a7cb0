"""evaluator/sass.py: reading the wgmma overlap off a kernel's SASS (issue 20). The real
compiler's output is covered by tests/test_sm90_compile.py; here the counting rule."""

from __future__ import annotations

from evaluator.sass import WAITS_IN_FLIGHT, ex2_in_flight, f2fp_in_flight

W1 = "        /*2930*/                   WARPGROUP.DEPBAR.LE gsb0, 0x1 ;\n"
W0 = "        /*3160*/                   WARPGROUP.DEPBAR.LE gsb0, 0x0 ;\n"
EX2 = "        /*35b0*/                   MUFU.EX2 R13, R28 ;\n"
OTHER = "        /*3150*/                   FMNMX R11, R24, R25, !PT ;\n"
CVT = "        /*3170*/                   F2FP.BF16.F32.PACK_AB R28, R29, R28 ;\n"


def test_exp2s_between_a_wait_with_one_in_flight_and_the_wait_for_all():
    overlapped = W1 + (EX2 + OTHER) * 64 + W0
    hoisted = W1 + OTHER + W0 + EX2 * 64
    assert ex2_in_flight(overlapped) == 64
    assert ex2_in_flight(hoisted) == 0
    assert ex2_in_flight(overlapped + hoisted) == 0  # the weakest loop counts
    assert ex2_in_flight(EX2 * 10 + W0 + EX2) is None  # never waits with one in flight
    assert ex2_in_flight(W1 + EX2 * 5) is None  # no wait for all after it: no loop to judge
    assert ex2_in_flight("") is None


def test_only_kernels_that_wait_with_a_group_in_flight_are_disassembled():
    assert WAITS_IN_FLIGHT.search("wgmma.wait_group.sync.aligned 1;")
    assert WAITS_IN_FLIGHT.search("wgmma.wait_group.sync.aligned  2;")
    assert not WAITS_IN_FLIGHT.search("wgmma.wait_group.sync.aligned 0;")


def test_conversions_in_flight_are_counted_the_same_way():
    """P converted to 16 bits after the wait: the next wgmmas wait for the F2FPs (0)."""
    before = W1 + (EX2 + EX2 + CVT) * 32 + W0
    after = W1 + EX2 * 64 + W0 + CVT * 32
    assert f2fp_in_flight(before) == 32 and ex2_in_flight(before) == 64
    assert f2fp_in_flight(after) == 0 and ex2_in_flight(after) == 64
    assert f2fp_in_flight(CVT * 4) is None
