"""Scoring translations: the paper's Table 1 (FID/KID against an anime set) and L_BCE.

- ``fid``: Inception features, FID, KID and the Table-1 report
- ``lbce``: semantic consistency (L_BCE) between translated images and their source photos
- ``temporal``: temporal consistency of a stylized video (the warping error E_warp, Lai et al. 2018)
"""
