# The official AV-MNIST networks (MST-Distill): LeNet-5 image student, ThreeLayerCNN-A audio student,
# CNN-I fusion teacher (LeNet-5 branch 84 + five-layer CNN branch 512 -> concat 596 -> fc1 298 -> fc2 10,
# no activation between fc1 and fc2).
num_classes = 10
head = dict(type="ClsHead", num_classes=num_classes)
image_model = dict(type="ModalityClassifier", encoders=dict(image=dict(type="LeNet5Encoder")), head=head)
audio_model = dict(type="ModalityClassifier", encoders=dict(audio=dict(type="ThreeLayerCNNEncoder")), head=head)
fusion_model = dict(
    type="ModalityClassifier",
    encoders=dict(image=dict(type="LeNet5Encoder"), audio=dict(type="FiveLayerCNNEncoder")),
    fusion=dict(type="MLPFusion", hidden_dims=(298,), order=("image", "audio"), activation=False),
    head=head,
)
