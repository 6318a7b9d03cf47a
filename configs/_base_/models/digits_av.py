# Models on digits-av (image 1×28×28, audio log-mel 1×64×64, 10 classes).
num_classes = 10
image_encoder = dict(type="LeNet5", in_channels=1, input_size=28, out_dim=84)
audio_encoder = dict(type="SpectrogramCNN", in_channels=1, channels=(16, 32, 64), out_dim=128, dropout=0.3)
head = dict(type="ClsHead", num_classes=num_classes)

image_model = dict(type="ModalityClassifier", encoders=dict(image=image_encoder), head=head)
audio_model = dict(type="ModalityClassifier", encoders=dict(audio=audio_encoder), head=head)
# Modality dropout keeps the teacher from leaning on one modality only.
fusion_model = dict(
    type="ModalityClassifier",
    encoders=dict(image=image_encoder, audio=audio_encoder),
    fusion=dict(type="ConcatFusion", out_dim=128, modality_dropout=0.4),
    head=head,
)
