"""Figures drawn from saved numbers (plots compute nothing).

figures      the static figures and the shared drawing helpers (colour maps, classifier rows, saving)
analysis     the figures of one analysis (``mixcollapse analyze``)
paper        the paper's grids of panels as ``mixcollapse reproduce`` lays them out
interactive  the configuration as a self-contained interactive HTML page
formats      which files a figure is written as (PNG; PDF when asked), without importing matplotlib
"""
