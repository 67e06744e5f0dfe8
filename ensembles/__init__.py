"""Ensembles and weight averaging for zoo models.

Independent-model, snapshot (Huang et al. 2017), Polyak/EMA and SWA
(Izmailov et al. 2018) ensembles are built by the ensembles issue; this
package holds the name so the layout is the project's from the start.
"""
