import sys
from pathlib import Path

import torch

# Tiny models: one thread avoids oversubscription when test processes share the cores.
torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).parent))
