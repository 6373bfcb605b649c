"""Every session-state key the app uses, in one place (a typo here is a bug everywhere).

Keys that belong to one page are grouped under that page's heading; shared ones come first.
"""

# --- shared: the model picker in the sidebar (rendered by app.py on every page) ---
MODEL_NAME = "model_name"  # registered variant name of the residual network, e.g. "resnet18"
MODEL_PLAIN = "model_plain"  # bool: use the plain twin instead
MODEL_RUN_VARIANT = "model_run_variant"  # greyed selectbox: the saved run's own variant
MODEL_WEIGHTS = "model_weights"  # "random" | "imagenet" | "checkpoint" | "run"
MODEL_CHOICE_MEMO = (
    "model_choice_memo"  # (widget values, ModelChoice): current_choice worked out once per change
)
CHECKPOINT = "checkpoint_upload"  # the sidebar's checkpoint file_uploader widget
CHECKPOINT_FILE = "checkpoint_file"  # (filename, bytes) kept after the uploader forgets it
DEVICE_WIDGET = "device_widget"  # the device selectbox
DEVICE = "device"  # "auto" | "cuda" | "mps" | "cpu", kept even on runs that skip the widget

# --- shared: images (Feature Maps and Attribution) ---
# Uploaded files as bytes (ui.images.Upload: name, digest, bytes); decoded through a digest-keyed
# cache, so no session holds full-resolution pixels.
IMAGE_UPLOADS = "image_uploads"

# --- Architecture page ---
ARCH_PREFIX = "arch_"

# --- Feature Maps page ---
FEAT_PREFIX = "feat_"
FEAT_IMAGE_PREFIX = "feat_img_"  # the image picker's keys (ui.images.picker_keys) under this prefix
FEAT_LAYER = "feat_layer"  # selectbox: stem, stage or block
FEAT_MODULE = "feat_module"  # text input: any module by dotted name (overrides FEAT_LAYER)
FEAT_CHANNEL_MODE = "feat_channel_mode"  # radio: "range" | "top-k"
FEAT_RANGE = "feat_range"  # range slider (first, last) channel
FEAT_TOPK = "feat_topk"  # slider: k most active channels
FEAT_CHANNEL_COUNT = "feat_channel_count"  # channels of the layer the sliders were last drawn for
FEAT_CHANNEL = "feat_channel"  # selectbox: the channel shown large
FEAT_GRID = "feat_grid"  # the grid's plotly chart (a click picks a channel)
FEAT_GRID_CLICK = "feat_grid_click"  # the last click handled, so a stale one does not override the selectbox
FEAT_ALLOW_LARGE = "feat_allow_large"  # checkbox: go ahead with a capture over the memory warning
FEAT_DOWNLOAD_PNG = "feat_download_png"
FEAT_TWIN = "feat_twin"  # radio: depth statistics against "cut" (same weights) | "trained" (the run's twin)
FEAT_DOWNLOAD_NPZ = "feat_download_npz"

# --- Gradient Flow page ---
GRAD_PREFIX = "grad_"
GRAD_MODEL_SOURCE = "grad_model_source"  # "seed" (fresh twins) | "sidebar" (a copy of the sidebar's model)
GRAD_FAMILY = "grad_family"  # "cifar" | "imagenet": which twin pair
GRAD_DEPTH_CIFAR = "grad_depth_cifar"  # 20 | 32 | 44 | 56 | 110
GRAD_DEPTH_IMAGENET = "grad_depth_imagenet"  # 18 | 34
GRAD_STAGES = "grad_stages"  # text: custom CIFAR blocks per stage, e.g. "30,30,30" (blank: use the depth)
GRAD_BN = "grad_bn"  # bool: BatchNorm on
GRAD_INIT = "grad_init"  # "kaiming" | "xavier" | "default"
GRAD_ZERO_INIT = "grad_zero_init"  # bool: each branch's last layer starts at zero
GRAD_BRANCH_SCALE = "grad_branch_scale"  # float: F(x) is multiplied by this
GRAD_SOURCE = "grad_source"  # "random" | "samples" | "digits"
GRAD_LABELS = "grad_labels"  # "random" | "true"
GRAD_BATCH = "grad_batch"  # batch size
GRAD_SIZE = "grad_size"  # input height and width
GRAD_SEED = "grad_seed"  # seed of the initialization and of the batch
GRAD_METRIC = "grad_metric"  # "grad_norm" | "grad_weight_ratio" on the twin chart
GRAD_SWEEP_DEPTHS = "grad_sweep_depths"  # depths of the sweep
GRAD_SWEEP_RUN = "grad_sweep_run"  # button
GRAD_SWEEPS = "grad_sweeps"  # set of (TwinSettings, BatchSettings, depths) the user asked for
GRAD_STEPS = "grad_steps"  # optimizer steps to train to
GRAD_LR = "grad_lr"  # SGD learning rate
GRAD_TRAIN = "grad_train"  # button
GRAD_STOP = "grad_stop"  # button
GRAD_TRAIN_PENDING = "grad_train_pending"  # set by the Train button's callback, consumed by the run
GRAD_TRAINERS = "grad_trainers"  # {(TwinSettings, BatchSettings, lr): TwinTrainer}, the last few
GRAD_DOWNLOAD = "grad_download"  # + "_<chart>": CSV download buttons

# --- Why it works: story, shattered gradients, receptive field ---
WHY_STORY_PREFIX = "why_story_"
WHY_STORY_SWEEP = "why_story_sweep"  # bool: the user asked for the full depth sweep (20-110, BN on/off)
WHY_STORY_RUN = "why_story_run"  # button: run that sweep
WHY_STORY_STOP = "why_story_stop"  # button: stop it
WHY_STORY_PENDING = "why_story_pending"  # set by the Run/Stop callbacks, consumed by the run
WHY_STORY_POINTS = "why_story_points"  # {(depth, batchnorm): TwinProfile} finished this session
WHY_STORY_OPEN_BN = "why_story_open_bn"  # button: Gradient Flow, 56 layers, BatchNorm on
WHY_STORY_OPEN_NOBN = "why_story_open_nobn"  # button: Gradient Flow, 56 layers, BatchNorm off
WHY_STORY_SWITCH = "why_story_switch"  # set by those buttons' callbacks: switch pages on this run
WHY_STORY_CHART = "why_story_chart"  # + "_chart" / "_csv" / "_html": the sweep figure and downloads
WHY_STORY_INIT_RUN = "why_story_init_run"  # button: measure the story at initialization here
WHY_STORY_INIT_ASKED = "why_story_init_asked"  # bool: it was asked (else the bundled measurement)
SHAT_PREFIX = "shat_"
SHAT_DEPTHS = "shat_depths"  # multiselect: hidden layers of the 1D toy nets
SHAT_WIDTH = "shat_width"  # selectbox: units per toy layer
SHAT_BN = "shat_bn"  # toggle: BatchNorm in the toy nets
SHAT_REPEATS = "shat_repeats"  # number input: networks per depth
SHAT_SEED = "shat_seed"  # number input
SHAT_RUN = "shat_run"  # button: run the toy sweep
SHAT_STOP = "shat_stop"  # button: stop it
SHAT_PENDING = "shat_pending"  # set by the Run/Stop callbacks
SHAT_POINTS = "shat_points"  # {(ToySettings, depth): (plain lines, residual lines)} finished this session
SHAT_SHOW = "shat_show"  # selectbox: the depth whose traces and autocorrelation are shown
SHAT_LINE_POINTS = "shat_line_points"  # selectbox: inputs along the line for the sidebar model
SHAT_LINE_RUN = "shat_line_run"  # button: the sidebar model and its counterpart on a line
SHAT_LINE_STOP = "shat_line_stop"
SHAT_LINE_PENDING = "shat_line_pending"
SHAT_LINES = "shat_lines"  # {(ModelChoice, points): LinePair} finished this session
SHAT_CHART = "shat_chart"  # + "_<figure>": charts and their download buttons
ERF_PREFIX = "erf_"
ERF_LAYER = "erf_layer"  # selectbox: the layer whose centre unit is measured
ERF_N = "erf_n"  # selectbox: inputs averaged
ERF_MASS = "erf_mass"  # slider: share of the gradient the ERF square holds (no recomputation)
ERF_RUN = "erf_run"  # button: the sidebar model and its counterpart
ERF_STOP = "erf_stop"
ERF_PENDING = "erf_pending"
ERF_PAIRS = "erf_pairs"  # {(ModelChoice, layer, n): ErfPair} finished this session
ERF_SWEEP_DEPTHS = "erf_sweep_depths"  # multiselect: CIFAR depths of the sweep at initialization
ERF_SWEEP_RUN = "erf_sweep_run"  # button
ERF_SWEEP_STOP = "erf_sweep_stop"
ERF_SWEEP_PENDING = "erf_sweep_pending"
ERF_SWEEP_POINTS = "erf_sweep_points"  # {(depth, size, n): (plain map, residual map)} finished this session
ERF_CHART = "erf_chart"  # + "_<figure>": charts and their download buttons

# --- Attribution page ---
ATTR_PREFIX = "attr_"  # also the image picker's prefix on this page
ATTR_METHOD = "attr_method"  # a method name of resviz.analysis.methods.METHOD_TABLE
ATTR_LAYER = "attr_layer"  # dotted layer name for Grad-CAM / Guided Grad-CAM
ATTR_LAYER_DEFAULT = "attr_layer_default"  # the default layer of the model ATTR_LAYER was offered for
ATTR_OPTION_PREFIX = "attr_opt_"  # + "<method>_<field>": an option widget built from the method table
ATTR_TARGET = "attr_target"  # -1 (the predicted class) or a class index
ATTR_OPACITY = "attr_opacity"  # map opacity over the image, 0-1 (no recomputation)
ATTR_COLORMAP = "attr_colormap"  # plotly colorscale name (no recomputation)
ATTR_BASELINE = "attr_baseline"  # Integrated Gradients baseline, key of BASELINES
ATTR_IG_STEPS = "attr_ig_steps"  # Integrated Gradients steps
ATTR_NOISE_TUNNEL = "attr_noise_tunnel"  # bool: SmoothGrad noise tunnel around Integrated Gradients
ATTR_NT_SAMPLES = "attr_nt_samples"  # noisy samples per image
ATTR_OCC_WINDOW = "attr_occlusion_window"  # occluding square, pixels
ATTR_GET_PRETRAINED = "attr_get_pretrained"  # button: switch the sidebar to ImageNet weights
ATTR_DOWNLOAD_PNG = "attr_download_png"  # + "_<i>": overlay PNG of image i
ATTR_DOWNLOAD_NPZ = "attr_download_npz"  # all raw maps
ATTR_GRID = "attr_grid"  # bool: show the comparison grid
ATTR_GRID_MODE = "attr_grid_mode"  # "methods" | "twin" (shortcuts cut) | "trained" (trained twin)
ATTR_GRID_IMAGE = "attr_grid_image"  # index of the image the grid explains
ATTR_GRID_LAYERS = "attr_grid_layers"  # rows of the grid
ATTR_GRID_METHODS = "attr_grid_methods"  # columns of the grid in "methods" mode
ATTR_GRID_TWIN_METHODS = "attr_grid_twin_methods"  # gradient CAMs of the grid in "twin" mode
ATTR_BATCH_SIZE = "attr_batch_size"  # Score-CAM / Ablation-CAM forward passes per batch
ATTR_IG_AUTO = "attr_ig_auto"  # toggle: raise Integrated Gradients' steps until its completeness check passes
ATTR_RUN = "attr_run"  # button: run a forward-pass CAM (its cost is said first)
ATTR_RUN_PENDING = "attr_run_pending"  # set by the Run button's callback: the key of the run asked for
ATTR_STOP = "attr_stop"  # button: stop a running forward-pass CAM (its click's rerun interrupts it)
ATTR_PROGRESS = "attr_progress"  # (run key, done, total) forward passes of the running forward-pass CAM
ATTR_STOPPED = "attr_stopped"  # set by Stop's callback: ATTR_PROGRESS when it was pressed (key None: idle)
ATTR_SLOW_RESULTS = "attr_slow_results"  # {cache key: AttributionResult} of forward-pass CAMs, last few

# --- Attribution page: faithfulness ---
FAITH_PREFIX = "faith_"
FAITH_SOURCE = "faith_source"  # radio: "held-out" (the run's dataset) | "images" (the picked images)
FAITH_N = "faith_n"  # select slider: held-out images
FAITH_METHODS = "faith_methods"  # multiselect: attribution methods and "random"
FAITH_STEPS = "faith_steps"  # select slider: deletion/insertion steps
FAITH_ROAD = "faith_road"  # radio: "4" | "9" ROAD thresholds
FAITH_RUN = "faith_run"  # button: evaluate
FAITH_STOP = "faith_stop"  # button: stop the evaluation (interrupts at the next progress update)
FAITH_ASKED = "faith_asked"  # set of requests the user pressed Evaluate for (not yet done or stopped)
FAITH_REPORTS = "faith_reports"  # {request: FaithfulnessReport}, the last few
FAITH_METRICS_CHART = "faith_metrics_chart"  # plotly chart: methods x metrics
FAITH_CURVES_CHART = "faith_curves_chart"  # plotly chart: deletion/insertion/ROAD curves
FAITH_DOWNLOAD = "faith_download"  # + "_<what>": CSV, npz and HTML downloads

# --- Training Lab page ---
TRAIN_PREFIX = "train_"
TRAIN_PRESET = "train_preset"  # selectbox: key of resviz.training.PRESETS; choosing one fills the widgets
TRAIN_DATASET = "train_dataset"  # selectbox: key of resviz.datasets.DATASETS
TRAIN_FOLDER = "train_folder"  # text input: the ImageFolder path for dataset "folder"
TRAIN_DOWNLOAD = "train_download"  # checkbox: allow torchvision to download CIFAR-10/MNIST
TRAIN_DEPTHS = "train_depths"  # multiselect: CIFAR depths (6n+2)
TRAIN_KINDS = "train_kinds"  # multiselect: "plain" and/or "residual"
TRAIN_WIDTHS = "train_widths"  # selectbox: key of the page's WIDTHS
TRAIN_STEPS = "train_steps"  # number input
TRAIN_LR = "train_lr"  # number input: peak learning rate
TRAIN_SEED = "train_seed"  # number input
TRAIN_START = "train_start"  # button
TRAIN_STOP = "train_stop"  # button: stop, keeping (and saving) what was trained
TRAIN_METRIC = "train_metric"  # selectbox: key of resviz.plots.training.METRICS
TRAIN_JOB = "train_job"  # resviz.training.TrainingJob of this session (its own models)
TRAIN_LIVE = "train_live"  # bool: the last full run saw the job running (its end reruns the app)
TRAIN_RUN = "train_run"  # the sidebar's saved-run selectbox (ui.models), a run folder path
RUN_GONE = "run_gone"  # (deleted run's id, the run shown instead): the sidebar says so (ui.models)
SESSION_ID = "session_id"  # this browser session's id (ui.sharing): owns the runs and jobs it starts
RUNS_CONFIRM = "runs_confirm"  # the id of the run whose Delete awaits confirmation (pages/runs.py)
LAND_PARTIAL = (
    "land_partial"  # (request, TwinLandscape) a Stop cut short: shown, not cached (ui.sections.landscape)
)
FAITH_PARTIAL = "faith_partial"  # (request, FaithfulnessReport) a Stop cut short (ui.sections.faithfulness)
TRAIN_CURVES_CHART = "train_curves_chart"  # plotly chart of the live curves
TRAIN_FINAL_CHART = "train_final_chart"  # plotly chart: final training error per model
TRAIN_POINTING_CHART = "train_pointing_chart"  # plotly chart: Grad-CAM pointing game per model
TRAIN_START_ERROR = "train_start_error"  # a sentence from the start button's callback, shown once
TRAIN_CSV = "train_csv"  # download button: per-step and per-evaluation curves of every model
TRAIN_SIZE = "train_size"  # selectbox: image side (16 or 32) for shapes / folder
TRAIN_SAVE_ANYWAY = "train_save_anyway"  # button: save a run that was stopped early
TRAIN_MODEL_DOWNLOAD = "train_model_download_"  # + model name: state dict download after a failed save
TRAIN_DEMO_METRIC = "train_demo_metric"  # radio: the bundled group's training or held-out error
TRAIN_DEMO_CHART = "train_demo_chart"  # + "_chart" / "_csv" / "_html": the seed-band figure

# --- Why it works: lesion study and paths ---
LESION_IMAGES = "lesion_images"  # number input: held-out images to evaluate on
LESION_KS = "lesion_ks"  # multiselect: numbers k of randomly deleted blocks
LESION_SWAPS = "lesion_swaps"  # multiselect: numbers k of swapped pairs of blocks
LESION_DRAWS = "lesion_draws"  # slider: random draws per k
LESION_RUN = "lesion_run"  # button
LESION_STOP = "lesion_stop"  # button: interrupts the running study at its next progress update
LESION_PENDING = "lesion_pending"  # set by the Run button's callback, consumed by the run
LESION_RESULTS = "lesion_results"  # {(model choice, LesionSettings): LesionStudy}, the last few
LESION_DOWNLOAD = "lesion_download"  # + "_<figure>_<csv|html>": download buttons
PATHS_SAMPLES = "paths_samples"  # slider: sampled paths per length
PATHS_BATCH = "paths_batch"  # slider: images in the forward pass
PATHS_RUN = "paths_run"  # button
PATHS_STOP = "paths_stop"  # button
PATHS_PENDING = "paths_pending"  # set by the Run button's callback, consumed by the run
PATHS_RESULTS = "paths_results"  # {(model choice, PathSettings): PathStudy}, the last few
PATHS_DOWNLOAD = "paths_download"  # + "_<csv|html>": download buttons

# --- Runs page ---
RUNS_TABLE = "runs_table"  # dataframe with multi-row selection: the runs to overlay and manage
RUNS_CSV = "runs_csv"  # download button: the table
RUNS_METRIC = "runs_metric"  # selectbox: key of resviz.plots.training.METRICS
RUNS_LOG = "runs_log"  # toggle: log y axis
RUNS_CHART = "runs_chart"  # plotly chart of the overlaid curves
RUNS_CURVES_CSV = "runs_curves_csv"  # download button: the overlaid curves
RUNS_TITLE = "runs_title_"  # + run id: text input of the new title
RUNS_RENAME = "runs_rename_"  # + run id: button
RUNS_DELETE = "runs_delete_"  # + run id: button
RUNS_ERROR = "runs_error"  # a sentence from a rename/delete callback, shown once

# --- Why it works: loss landscape ---
LAND_PREFIX = "land_"
LAND_GRID = "land_grid"  # slider: grid points a side (odd, so that the trained weights are on it)
LAND_RANGE = "land_range"  # select slider: α, β run over [-range, range]
LAND_N = "land_n"  # number input: held-out images the loss is measured on
LAND_INTERP = "land_interp"  # checkbox: also the line from each run's initial to its trained weights
LAND_RUN = "land_run"  # button
LAND_STOP = "land_stop"  # button: interrupts the run at its next progress update
LAND_PENDING = "land_pending"  # set by the Run/Stop buttons' callbacks, consumed by the next run
LAND_RESULTS = "land_results"  # {(model choice, seeds, grid, range, n, interp): TwinLandscape}, the last few
LAND_STOPPED = "land_stopped"  # the request a click on Stop interrupted (to say so once)
LAND_DOWNLOAD = "land_download"  # + "_<what>": download buttons
