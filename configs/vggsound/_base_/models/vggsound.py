# MST-Distill's VGGSound-50k models (models/CPSP.py): DSCNN-VGGS-I, VisualBranchNet-VGGS, AudioBranchNet-VGGS.
# Official -> xmodal module paths (docs/datasets/vggsound.md):
#   visual_branch.* -> encoders.visual.*    audio_branch.* -> encoders.audio.*    fc3 -> head.fc
#   students: fc1, fc2 -> encoders.<modality>.fc1 / .fc2    teacher: fc1, fc2 -> fusion.fc1 / .fc2
num_classes = 141
visual_encoder = dict(type="VGGSoundVisualEncoder", in_channels=512, segments=10, grid=(7, 7),
                      channels=(256, 128, 64), hidden_dims=(320, 160))
audio_encoder = dict(type="VGGSoundAudioEncoder", segments=10, feat_dim=128, channels=(16, 32, 64),
                     hidden_dims=(320, 160))
head = dict(type="ClsHead", num_classes=num_classes)

visual_model = dict(type="ModalityClassifier", encoders=dict(visual=visual_encoder), head=head)  # VisualBranchNet-VGGS
audio_model = dict(type="ModalityClassifier", encoders=dict(audio=audio_encoder), head=head)  # AudioBranchNet-VGGS
# DSCNN-VGGS-I: bare branches (audio 256 + visual 128), concatenated audio first, fc1 384->320, fc2 320->160
fusion_model = dict(
    type="ModalityClassifier",
    encoders=dict(visual=dict(visual_encoder, hidden_dims=()), audio=dict(audio_encoder, hidden_dims=())),
    fusion=dict(type="MLPFusion", hidden_dims=(320, 160), order=("audio", "visual")),
    head=head,
)
