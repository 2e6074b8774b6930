"""SynthesizeMe baseline (folder package; the harness loads ``adapter:SynthesizeMe``)."""
