import sys, numpy as np
from safetensors.numpy import load_file
