# MST-Distill's CrisisMMD-V2 models (models/MLPs.py): MLP-I, MLP-Vb, MLP-Tb.
# Official -> xmodal module paths (docs/datasets/crisismmd.md):
#   students: fc1, fc2 -> encoders.<image|text>.fc1 / .fc2, fc3 -> head.fc
#   teacher:  VisualNet.fc1/fc2 -> encoders.image.fc1/fc2, TextualNet.fc1/fc2 -> encoders.text.fc1/fc2,
#             fc1, fc2 -> fusion.fc1 / .fc2, fc3 -> head.fc
num_classes = 8
image_encoder = dict(type="FeatureMLP", in_dim=2048, hidden_dims=(1024, 512))
text_encoder = dict(type="FeatureMLP", in_dim=768, hidden_dims=(1024, 512))
head = dict(type="ClsHead", num_classes=num_classes)

image_model = dict(type="ModalityClassifier", encoders=dict(image=image_encoder), head=head)  # MLP-Vb
text_model = dict(type="ModalityClassifier", encoders=dict(text=text_encoder), head=head)  # MLP-Tb
# MLP-I: image (512) and text (512) concatenated image first, fc1 1024->512, fc2 512->256
fusion_model = dict(
    type="ModalityClassifier",
    encoders=dict(image=image_encoder, text=text_encoder),
    fusion=dict(type="MLPFusion", hidden_dims=(512, 256), order=("image", "text")),
    head=head,
)
