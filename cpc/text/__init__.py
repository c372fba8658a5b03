"""Text CPC (paper, section 3.3): sentences encoded one by one, a GRU over the sentences of a chapter, the next sentences predicted."""
