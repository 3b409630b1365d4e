"""Virtual scanning-probe and electron microscopy of an electrode cross-section.

``esim.spm.instrument`` holds the instrument models shared by the SSRM, C-AFM, KPFM and SEM/EDX
maps: tip contact and spreading resistance, amplifier ranges and noise, the KPFM point-spread
function and the SEM/EDX image formation.  Importing this package has no side effects.
"""
