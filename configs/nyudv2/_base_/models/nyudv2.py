# FuseNet models on NYU-Depth-V2 (MST-Distill: FuseNet-I, FuseNet-RGBbranch, FuseNet-Dbranch).
# width=1.0 is the official VGG16 widths 64-128-256-512-512; tests build them with a small width.
segmenter = dict(type="FuseNetSegmenter", num_classes=41, ignore_index=0, width=1.0, dropout=0.4,
                 init="official")

fusion_model = dict(segmenter, modalities=("rgb", "depth"))  # FuseNet-I: depth fused into the RGB encoder
rgb_model = dict(segmenter, modalities=("rgb",))  # FuseNet-RGBbranch
depth_model = dict(segmenter, modalities=("depth",))  # FuseNet-Dbranch
