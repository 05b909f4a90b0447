"""The paper's published values (Dufumier et al., MICCAI 2021), read by eye from its
figure on real data, to stand beside this pipeline's results."""

# The paper's Figure (representation quality, linear probe; Fully sup. = trained from
# scratch): {task: {n_target: {method: AUC}}}.
PAPER_AUC = {
    "SCZ vs CTL": {
        100: {
            "y-Aware": 0.737,
            "SimCLR": 0.586,
            "Age sup.": 0.630,
            "Model Genesis": 0.599,
            "Fully sup.": 0.690,
        },
        300: {
            "y-Aware": 0.765,
            "SimCLR": 0.642,
            "Age sup.": 0.678,
            "Model Genesis": 0.685,
            "Fully sup.": 0.748,
        },
        500: {
            "y-Aware": 0.796,
            "SimCLR": 0.677,
            "Age sup.": 0.721,
            "Model Genesis": 0.721,
            "Fully sup.": 0.777,
        },
    },
    "BD vs CTL": {
        100: {
            "y-Aware": 0.590,
            "SimCLR": 0.563,
            "Age sup.": 0.571,
            "Model Genesis": 0.542,
            "Fully sup.": 0.593,
        },
        300: {
            "y-Aware": 0.648,
            "SimCLR": 0.580,
            "Age sup.": 0.595,
            "Model Genesis": 0.582,
            "Fully sup.": 0.630,
        },
        500: {
            "y-Aware": 0.663,
            "SimCLR": 0.605,
            "Age sup.": 0.626,
            "Model Genesis": 0.600,
            "Fully sup.": 0.658,
        },
    },
    "AD vs CTL": {
        100: {
            "y-Aware": 0.916,
            "SimCLR": 0.841,
            "Age sup.": 0.820,
            "Model Genesis": 0.886,
            "Fully sup.": 0.935,
        },
        200: {
            "y-Aware": 0.937,
            "SimCLR": 0.864,
            "Age sup.": 0.880,
            "Model Genesis": 0.909,
            "Fully sup.": 0.958,
        },
        300: {
            "y-Aware": 0.952,
            "SimCLR": 0.880,
            "Age sup.": 0.913,
            "Model Genesis": 0.909,
            "Fully sup.": 0.965,
        },
    },
}
PAPER_METHOD = {
    "yaware": "y-Aware",
    "simclr": "SimCLR",
    "age_supervision": "Age sup.",
    "model_genesis": "Model Genesis",
    "scratch": "Fully sup.",
}
