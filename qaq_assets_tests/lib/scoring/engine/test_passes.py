"""Pass planning and layout: every sequence once, within the budget, laid out row for row."""

import numpy as np

from qaq_assets.lib.scoring.engine.packed_attention import BLOCK_ROWS, padded_length
from qaq_assets.lib.scoring.engine.passes import PACKED, PADDED, ScoredSequence, lay_out, plan, plan_packed

PAD = 0


def sequence(index, length, rng):
    ids = rng.integers(1, 300, length)
    third = length // 3
    return ScoredSequence(index, 0, ids, (1, third), (third + 1, length - 1), (length - 1, length))


def test_packed_passes_fill_the_budget_and_hold_every_sequence_once():
    lengths = [(i * 37) % 300 + 20 for i in range(500)] + [5000]
    passes = plan_packed(lengths, batch_tokens=4096)
    assert sorted(i for members in passes for i in members) == list(range(len(lengths)))
    assert passes[0] == [500]  # longer than the budget: alone
    for members, following in zip(passes[1:], passes[2:], strict=False):
        tokens = sum(lengths[i] for i in members)
        assert padded_length(tokens) <= 4096 < padded_length(tokens + lengths[following[0]])


def test_a_packed_pass_lays_sequences_end_to_end_with_positions_from_zero():
    rng = np.random.default_rng(0)
    sequences = [sequence(i, length, rng) for i, length in enumerate([40, 7, 130, 12])]
    [planned] = plan(PACKED, [s.ids.shape[0] for s in sequences], 4096, 64)
    host = lay_out(planned, sequences, PAD)
    order = [sequences[i] for i in planned.members]
    real = sum(s.ids.shape[0] for s in order)
    assert host.rows == padded_length(real) and host.rows % BLOCK_ROWS == 0 and host.real_tokens == real
    np.testing.assert_array_equal(host.input_ids[:real], np.concatenate([s.ids for s in order]))
    assert (host.input_ids[real:] == PAD).all()
    np.testing.assert_array_equal(host.positions[:real], np.concatenate([np.arange(s.ids.shape[0]) for s in order]))
    check_targets(host, order, bases=np.concatenate(([0], np.cumsum([s.ids.shape[0] for s in order])[:-1])))


def test_a_padded_pass_lays_out_right_padded_groups():
    rng = np.random.default_rng(1)
    sequences = [sequence(i, length, rng) for i, length in enumerate([40, 41, 7, 130, 12, 39])]
    [planned] = plan(PADDED, [s.ids.shape[0] for s in sequences], 4096, 64)
    host = lay_out(planned, sequences, PAD)
    bases, offset = [], 0
    for (count, width), group in zip(host.shapes, planned.groups, strict=True):
        block = host.input_ids[offset : offset + count * width].reshape(count, width)
        for row, index in enumerate(group):
            length = sequences[index].ids.shape[0]
            np.testing.assert_array_equal(block[row, :length], sequences[index].ids)
            assert (block[row, length:] == PAD).all()
            bases.append(offset + row * width)
        offset += count * width
    check_targets(host, [sequences[i] for i in planned.members], np.array(bases))


def check_targets(host, order, bases):
    """Each span's targets are its tokens, each predicted by the row before it, split back per sequence."""
    expected_rows = np.concatenate(
        [np.arange(base + a, base + b) for s, base in zip(order, bases, strict=True) for a, b in s.spans]
    )
    np.testing.assert_array_equal(host.predictor_rows, expected_rows - 1)
    np.testing.assert_array_equal(host.target_ids, host.input_ids[expected_rows])
    split = host.split(host.target_ids.astype(np.float32))
    for s, spans in zip(order, split, strict=True):
        for (a, b), values in zip(s.spans, spans, strict=True):
            np.testing.assert_array_equal(values, s.ids[a:b])
