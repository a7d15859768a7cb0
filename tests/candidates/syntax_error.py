"""Broken test candidate: a syntax error (expect `syntax`)."""

def attention(q, k, v, *, causal=False, sm_scale=None)
    return q
