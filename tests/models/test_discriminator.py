import pytest
import torch

from scenimefy.models import PatchDiscriminator, PatchSampler, ScenimefyTranslator, encoder_tap_channels


def test_basic_patchgan_shape_and_size():
    d = PatchDiscriminator()  # D_U: 70x70 PatchGAN, 3 layers, ndf 64
    out = d(torch.zeros(1, 3, 256, 256))
    assert out.shape == (1, 1, 30, 30)  # the pix2pix/CUT "basic" D: 30x30 patch scores at 256 px
    assert sum(p.numel() for p in d.parameters()) == 2_764_737  # same weights as the reference NLayerDiscriminator


def test_conditional_discriminator_takes_the_concatenation():
    d = PatchDiscriminator(in_channels=6, ndf=8)  # D_P on (x_p, y)
    x, y = torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, 32, 32)
    assert d(torch.cat([x, y], dim=1)).shape == (2, 1, 2, 2)
    with pytest.raises(ValueError, match="expects 6 channels"):
        d(x)


def test_strided_variant_and_instance_norm_per_sample():
    d = PatchDiscriminator(ndf=4, antialias=False)
    torch.manual_seed(0)
    a, b = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)
    # instance norm: a sample's score does not depend on the rest of the batch
    torch.testing.assert_close(d(torch.cat([a, b]))[:1], d(a), rtol=1e-5, atol=1e-6)


def test_discriminator_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    d = PatchDiscriminator(in_channels=6, ndf=8, n_layers=2)
    d.save_pretrained(tmp_path / "d")
    assert (tmp_path / "d" / "config.json").is_file()
    loaded = PatchDiscriminator.from_pretrained(tmp_path / "d")
    assert loaded.config.in_channels == 6 and loaded.config.n_layers == 2
    x = torch.randn(1, 6, 32, 32)
    torch.testing.assert_close(loaded(x), d(x))


def test_tap_channels_match_the_translator():
    for config, layers in [
        ({"ngf": 8, "n_blocks": 2}, (0, 4, 8, 12, 13)),
        ({"ngf": 64, "n_blocks": 9}, (0, 4, 8, 12, 16)),
        ({"ngf": 8, "n_blocks": 6, "antialias": False}, (0, 4, 7, 10)),
    ]:
        channels = encoder_tap_channels(config, layers)
        feats = ScenimefyTranslator(**config).encode(torch.zeros(1, 3, 32, 32), layers)
        assert channels == [f.shape[1] for f in feats]
    assert encoder_tap_channels({"ngf": 64, "n_blocks": 9}) == [3, 128, 256, 256, 256]
    with pytest.raises(ValueError, match="encoder layers"):
        encoder_tap_channels({"ngf": 8, "n_blocks": 2}, (0, 16))


def test_patch_sampler_reuses_ids_and_embeds_unit_vectors():
    torch.manual_seed(0)
    sampler = PatchSampler(in_channels=[3, 16], embed_dim=8)
    feats_a = [torch.randn(2, 3, 10, 10), torch.randn(2, 16, 4, 4)]
    feats_b = [torch.randn(2, 3, 10, 10), torch.randn(2, 16, 4, 4)]
    ids = PatchSampler.sample_patch_ids(feats_a, num_patches=32)
    assert [len(i) for i in ids] == [32, 16]  # capped at H*W
    assert all(len(set(i.tolist())) == len(i) for i in ids)  # distinct positions
    emb_a, emb_b = sampler(feats_a, ids), sampler(feats_b, ids)
    assert emb_a[0].shape == (2, 32, 8) and emb_b[1].shape == (2, 16, 8)
    torch.testing.assert_close(emb_a[0].norm(dim=-1), torch.ones(2, 32))
    # the embedding of patch n is the MLP of the feature vector at position ids[n], for either image
    y, x = divmod(int(ids[0][5]), 10)
    manual = torch.nn.functional.normalize(sampler.mlps[0](feats_b[0][1, :, y, x]), dim=-1)
    torch.testing.assert_close(emb_b[0][1, 5], manual)


def test_patch_sampler_is_built_eagerly_and_round_trips(tmp_path):
    channels = encoder_tap_channels({"ngf": 8, "n_blocks": 2}, (0, 4, 8, 12, 13))
    sampler = PatchSampler(in_channels=channels, embed_dim=16)
    assert len(list(sampler.parameters())) == 4 * len(channels)  # every head exists before any batch
    sampler.save_pretrained(tmp_path / "f")
    loaded = PatchSampler.from_pretrained(tmp_path / "f")
    assert list(loaded.config.in_channels) == channels
    feats = [torch.randn(1, c, 8, 8) for c in channels]
    ids = PatchSampler.sample_patch_ids(feats, 8, generator=torch.Generator().manual_seed(0))
    for a, b in zip(loaded(feats, ids), sampler(feats, ids)):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="expected 5 feature maps"):
        sampler(feats[:2], ids[:2])
