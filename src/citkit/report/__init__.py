"""Tables (markdown, CSV, JSON) and plots from run directories."""

from citkit.report.plots import plot_matrix
from citkit.report.tables import metrics_table, write_report

__all__ = ["metrics_table", "plot_matrix", "write_report"]
