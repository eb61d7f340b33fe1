"""`landsentry batch`: a province of scenes on Dask distributed, with a ledger for resume and one merged flag register."""
