"""Pure measures on tensors, imported by training, analysis and theory alike.

geometry     the classifier's norms and cosines against a simplex ETF (Figure 5)
calibration  ECE/MCE and reliability (Appendix C), confidence by lambda (Figure 4)
collapse     neural collapse NC1-NC4 (Papyan et al. 2020) from class means and covariances
projection   Appendix B.2's projection of features onto the plane of three classifier rows
"""
