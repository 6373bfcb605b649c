"""Every session-state key the app uses, in one place (a typo here is a bug everywhere).

Keys that belong to one page are grouped under that page's heading; shared ones come first.
"""

# --- shared: the model picker in the sidebar (rendered by app.py on every page) ---
MODEL_NAME = "model_name"  # registered variant name of the residual network, e.g. "resnet18"
MODEL_PLAIN = "model_plain"  # bool: use the plain twin instead
MODEL_WEIGHTS = "model_weights"  # "random" | "imagenet" | "checkpoint" | "run"
CHECKPOINT = "checkpoint_upload"  # the sidebar's checkpoint file_uploader widget
CHECKPOINT_FILE = "checkpoint_file"  # (filename, bytes) kept after the uploader forgets it
DEVICE_WIDGET = "device_widget"  # the device selectbox
DEVICE = "device"  # "auto" | "cuda" | "mps" | "cpu", kept even on runs that skip the widget

# --- shared: images (Feature Maps and Attribution) ---
IMAGES = "images"  # list of resviz.images.LoadedImage the user picked or uploaded

# --- Architecture page ---
ARCH_PREFIX = "arch_"

# --- Feature Maps page ---
FEAT_PREFIX = "feat_"

# --- Gradient Flow page ---
GRAD_PREFIX = "grad_"

# --- Attribution page ---
ATTR_PREFIX = "attr_"

# --- Training Lab page ---
TRAIN_PREFIX = "train_"
