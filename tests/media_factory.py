"""The tests' media factory lives in the package (emofusion.media.synth), shared with benchmarks and the demo."""

from emofusion.media.synth import *  # noqa: F401,F403
from emofusion.media.synth import CONTAINERS, FRAME_CODE_BITS, frame_index, make_clip, make_face_image, tone  # noqa: F401
