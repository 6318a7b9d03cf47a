# MST-Distill's RAVDESS models (models/SeqNets.py): DSCNN-I (DualStreamCNN), VisualBranchNet, AudioBranchNet.
# Official -> xmodal module paths (docs/datasets/ravdess.md):
#   visual_branch.* -> encoders.video.*    audio_branch.* -> encoders.audio.*    fc3 -> head.fc
#   students: fc1, fc2 -> encoders.<modality>.fc1 / .fc2    teacher: fc1, fc2 -> fusion.fc1 / .fc2
num_classes = 8
video_encoder = dict(type="RAVDESSVisualEncoder", frames=15, in_channels=3, size=(224, 224), channels=(6, 12, 24),
                     hidden_dims=(320, 160))
audio_encoder = dict(type="RAVDESSAudioEncoder", n_mfcc=15, frames=156, channels=(32, 128, 256), hidden_dims=(320, 160))
head = dict(type="ClsHead", num_classes=num_classes)

video_model = dict(type="ModalityClassifier", encoders=dict(video=video_encoder), head=head)  # VisualBranchNet
audio_model = dict(type="ModalityClassifier", encoders=dict(audio=audio_encoder), head=head)  # AudioBranchNet
# DSCNN-I: bare branches (audio 1,280 + video 18,816), concatenated audio first, fc1 20,096->320, fc2 320->160
fusion_model = dict(
    type="ModalityClassifier",
    encoders=dict(video=dict(video_encoder, hidden_dims=()), audio=dict(audio_encoder, hidden_dims=())),
    fusion=dict(type="MLPFusion", hidden_dims=(320, 160), order=("audio", "video")),
    head=head,
)
