"""The AlphaFold2 architecture both preset families start from, as plain dicts.

Jumper et al. (2021), Suppl. Table 5: the attention, triangle and transition blocks and
the monomer base config. configs.model (monomer presets) and configs.model_multimer
(AlphaFold-Multimer, which reuses the blocks and heads) build their ConfigDicts from
these; keeping them here lets both import one module without importing each other.
"""

from __future__ import annotations


def attention(num_head: int, orientation: str, dropout: float, **extra) -> dict:
  return dict(dropout_rate=dropout, gating=True, num_head=num_head,
              orientation=orientation, shared_dropout=True, **extra)


def trimul(equation: str, channels: int) -> dict:
  return dict(dropout_rate=0.25, equation=equation, num_intermediate_channel=channels,
              orientation='per_row', shared_dropout=True)


def transition(factor: int) -> dict:
  return dict(dropout_rate=0.0, num_intermediate_factor=factor, orientation='per_row',
              shared_dropout=True)


EVOFORMER_BLOCK = dict(
    msa_row_attention_with_pair_bias=attention(8, 'per_row', 0.15),
    msa_column_attention=attention(8, 'per_column', 0.0),
    msa_transition=transition(4),
    outer_product_mean=dict(first=False, chunk_size=128, dropout_rate=0.0,
                            num_outer_channel=32, orientation='per_row',
                            shared_dropout=True),
    triangle_attention_starting_node=attention(4, 'per_row', 0.25),
    triangle_attention_ending_node=attention(4, 'per_column', 0.25),
    triangle_multiplication_outgoing=trimul('ikc,jkc->ijc', 128),
    triangle_multiplication_incoming=trimul('kjc,kic->ijc', 128),
    pair_transition=transition(4),
)

TEMPLATE = dict(
    attention=dict(gating=False, key_dim=64, num_head=4, value_dim=64),
    dgram_features=dict(min_bin=3.25, max_bin=50.75, num_bins=39),
    embed_torsion_angles=False,
    enabled=False,
    template_pair_stack=dict(
        num_block=2,
        triangle_attention_starting_node=attention(4, 'per_row', 0.25, key_dim=64,
                                                    value_dim=64),
        triangle_attention_ending_node=attention(4, 'per_column', 0.25, key_dim=64,
                                                  value_dim=64),
        triangle_multiplication_outgoing=trimul('ikc,jkc->ijc', 64),
        triangle_multiplication_incoming=trimul('kjc,kic->ijc', 64),
        pair_transition=transition(2),
    ),
    max_templates=4,
    subbatch_size=128,
    use_template_unit_vector=False,
)

BASE = dict(
    data=dict(
        common=dict(
            masked_msa=dict(profile_prob=0.1, same_prob=0.1, uniform_prob=0.1),
            max_extra_msa=1024,
            msa_cluster_features=True,
            num_recycle=3,
            reduce_msa_clusters_by_max_templates=False,
            resample_msa_in_recycling=True,
            use_templates=False,
        ),
        eval=dict(
            fixed_size=True,
            subsample_templates=False,
            masked_msa_replace_fraction=0.15,
            max_msa_clusters=512,
            max_templates=4,
            num_ensemble=1,
        ),
    ),
    model=dict(
        embeddings_and_evoformer=dict(
            evoformer_num_block=48,
            evoformer=EVOFORMER_BLOCK,
            extra_msa_channel=64,
            extra_msa_stack_num_block=4,
            max_relative_feature=32,
            msa_channel=256,
            pair_channel=128,
            prev_pos=dict(min_bin=3.25, max_bin=20.75, num_bins=15),
            recycle_features=True,
            recycle_pos=True,
            seq_channel=384,
            template=TEMPLATE,
        ),
        global_config=dict(
            # NUMERICS: float32 by default (parity); True computes matmuls in
            # bfloat16 with softmax, layer norm and coordinates in float32.
            bfloat16=False,
            deterministic=False,
            subbatch_size=4,
            use_remat=False,
            zero_init=True,
        ),
        heads=dict(
            distogram=dict(first_break=2.3125, last_break=21.6875, num_bins=64, weight=0.3),
            predicted_aligned_error=dict(max_error_bin=31.0, num_bins=64, num_channels=128,
                                         filter_by_resolution=True, min_resolution=0.1,
                                         max_resolution=3.0, weight=0.0),
            experimentally_resolved=dict(filter_by_resolution=True, max_resolution=3.0,
                                         min_resolution=0.1, weight=0.01),
            structure_module=dict(
                num_layer=8,
                fape=dict(clamp_distance=10.0, clamp_type='relu', loss_unit_distance=10.0),
                angle_norm_weight=0.01,
                chi_weight=0.5,
                clash_overlap_tolerance=1.5,
                compute_in_graph_metrics=True,
                dropout=0.1,
                num_channel=384,
                num_head=12,
                num_layer_in_transition=3,
                num_point_qk=4,
                num_point_v=8,
                num_scalar_qk=16,
                num_scalar_v=16,
                position_scale=10.0,
                sidechain=dict(atom_clamp_distance=10.0, num_channel=128,
                               num_residual_block=2, weight_frac=0.5, length_scale=10.0),
                structural_violation_loss_weight=1.0,
                # The violation loss's CA-C-N band, violation_tolerance_factor times the C-N
                # bond length's stddev (False: AlphaFold 2.3, under which the published weights
                # were trained) or the angle's own cosine stddev (True: DeepMind's 2025
                # correction, 2.2x wider).
                # False keeps fine-tuning those weights on their own objective and the loss at
                # parity with AlphaFold 2.3; DeepMind's multimer loss still has it too.
                # Relaxation's check always uses the corrected band.
                use_ca_c_n_angle_stddev=False,
                violation_tolerance_factor=12.0,
                weight=1.0,
            ),
            predicted_lddt=dict(filter_by_resolution=True, max_resolution=3.0,
                                min_resolution=0.1, num_bins=50, num_channels=128,
                                weight=0.01),
            masked_msa=dict(num_output=23, weight=2.0),
        ),
        num_recycle=3,
        resample_msa_in_recycling=True,
        # Stop recycling early once CA-CA distances move less than this (Å,
        # RMS over pairs) between recycles; 0 runs every recycle.
        recycle_early_stop_tolerance=0.0,
    ),
)
