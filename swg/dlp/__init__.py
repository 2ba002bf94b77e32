"""Data loss prevention (DLP) cores: pure detectors over text and the scanner that runs them.

`mynumber`, `corporate_number` and `cards` validate numbers, `keywords` counts configured
keywords and regular expressions, `scan` finds candidates in (streamed) text, applies a
`DlpPolicy` and returns a `DlpVerdict`. No I/O here: the proxy shell feeds the bodies in.
"""
