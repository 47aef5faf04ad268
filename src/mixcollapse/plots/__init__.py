"""Figures drawn from saved numbers (plots compute nothing).

figures      the static figures of one analysis and the shared drawing helpers
paper        the paper's grids of panels (Figures 1-11) as `mixcollapse reproduce` lays them out
interactive  the configuration as a self-contained interactive HTML page
"""
