"""Every head's own preset keys, as the head's module declares them
(``KEYS`` in ``cacl_cli/model/heads/*``), in the order of ``HEADS``. Rendered from the heads
(python -m cacl_cli.model.heads > cacl_cli/config/head_keys.py) so that the config, which checks
every key, never imports torch; tests/model/heads/test_registry.py fails when this file and the
heads differ."""

# fmt: off
from cacl_cli.config.keys import key

HEAD_KEYS = {
    'global': {
        'heads.global': key(
            True,
            'train g_G, the global head (eq. 3)',
        ),
        'loss.global_weight': key(
            1.0,
            "w_G, the global term's weight in the total loss",
            span=(0, 1000000.0),
        ),
    },
    'pixel': {
        'heads.pixel': key(
            True,
            'train g_P, the pixel head (eq. 4)',
        ),
        'loss.pixel_weight': key(
            1.0,
            "w_P, the pixel term's weight in the total loss",
            span=(0, 1000000.0),
        ),
        'loss.pixel_positive': key(
            'global',
            "global: eq. 4's argmax over the global head; position: the same cell",
            choices=('global', 'position'),
        ),
        'loss.pixel_negatives': key(
            'queue',
            "queue: other images' pixels (the paper); queue_and_image: also the cells of "
            "v+'s own image outside the 3x3 block around the positive",
            choices=('queue', 'queue_and_image'),
        ),
    },
    'cycle': {
        'heads.cycle': key(
            True,
            'train g_C, the cycle-attention head (eqs. 5-6)',
        ),
        'loss.cycle_weight': key(
            1.0,
            "w_C, the cycle term's weight in the total loss",
            span=(0, 1000000.0),
        ),
        'loss.soft_cycle': key(
            True,
            "KL to the global head's affinities instead of the identity target",
        ),
        'loss.soft_target_tau': key(
            0.07,
            "temperature of the soft cycle's target (the paper uses tau)",
            span=(1e-300, 100),
        ),
        'loss.soft_target_head': key(
            'global',
            'whose affinities the soft target is: global (the paper, v to v+) or cycle '
            "(the cycle head's own among v's cells; docs/method.md)",
            choices=('global', 'cycle'),
        ),
        'loss.cycle_tau': key(
            0.0,
            "temperature of the cycle's two jumps; 0: tau (the paper)",
            span=(0, 100),
        ),
        'loss.cycle_pool': key(
            1,
            'the cycle runs on regions of N x N cells (average-pooled maps; its queue '
            'holds pooled keys); 1: on cells, as the paper (docs/method.md)',
            span=(1, 64),
        ),
        'loss.cycle_target_sigma': key(
            0.0,
            'hard cycle only: 0 returns each pixel to itself (eq. 6); s > 0 accepts a '
            'Gaussian of s cells around it (not in the paper; docs/method.md)',
            span=(0, 100),
        ),
        'loss.cycle_memory_mb': key(
            0.0,
            "budget for the cycle's queue logits (B x HW x Q floats); over it they are "
            'computed in chunks of rows, with the same result. 0: no budget',
            span=(0, 1000000000.0),
        ),
        'loss.cycle_return': key(
            'self',
            "where the cycle's second jump lands in v: self (the paper: v's online "
            'features) or reroll (momentum features of v under a fresh roll, so a code of '
            "the padding's place cannot close the loop; docs/method.md)",
            choices=('self', 'reroll'),
        ),
        'moco.cycle_queue_size': key(
            16384,
            "negatives in the cycle head's second jump",
            span=(1, 100000000),
        ),
    },
}
