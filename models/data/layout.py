"""Event layout shared by the loader and the generator: 19 object rows of (pT, eta, phi), as in arXiv 2108.03986."""
import numpy as np

N_OBJECTS = 19
N_FEATURES = 3
FEATURE_NAMES = ("pT", "eta", "phi")

MET_ROW = 0
ELECTRON_ROWS = slice(1, 5)
MUON_ROWS = slice(5, 9)
JET_ROWS = slice(9, 19)
N_ELECTRONS = 4
N_MUONS = 4
N_JETS = 10

CLASS_MET = 1
CLASS_ELECTRON = 2
CLASS_MUON = 3
CLASS_JET = 4

SLOT_CLASS = np.array([CLASS_MET] + [CLASS_ELECTRON] * N_ELECTRONS + [CLASS_MUON] * N_MUONS + [CLASS_JET] * N_JETS,
                      dtype=np.float64)
SLOT_CLASS.setflags(write=False)

PUBLISHED_DATASET = "Particles"
PUBLISHED_COLUMN_NAMES = (b"Pt", b"Eta", b"Phi", b"Class")
PUBLISHED_CLASS_NAMES = (b"MET_class_1", b"Four_Ele_class_2", b"Four_Mu_class_3", b"Ten_Jet_class_4")

# Paper's lepton filter: one electron (pT > 23 GeV, |eta| < 3) or one muon (pT > 23 GeV, |eta| < 2.1).
TRIGGER_PT = 23.0
ELECTRON_TRIGGER_ABS_ETA = 3.0
MUON_TRIGGER_ABS_ETA = 2.1

# Published convention: a jet beyond this |eta| keeps its row and phi, with pT and eta set to zero.
JET_ZEROED_ABS_ETA = 4.0
