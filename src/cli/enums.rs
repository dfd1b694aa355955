//! The command line's names for the library's choices (clap `ValueEnum`s live here, not in the
//! library), each mapped to the library enum it stands for.

use clap::ValueEnum;

/// Defines a `ValueEnum` mirroring a library enum variant for variant, with `From` into it.
macro_rules! mirror {
    ($(#[$m:meta])* $name:ident => $lib:ty { $($(#[$vm:meta])* $v:ident),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
        pub enum $name { $($(#[$vm])* $v),+ }

        impl From<$name> for $lib {
            fn from(v: $name) -> Self {
                match v { $($name::$v => <$lib>::$v),+ }
            }
        }

        impl From<$lib> for $name {
            fn from(v: $lib) -> Self {
                match v { $(<$lib>::$v => $name::$v),+ }
            }
        }
    };
}

mirror! {
    /// How an ensemble combines its members' outputs.
    Combine => softlabel::teacher::Combine {
        /// The mean of the members' logits.
        MeanLogits,
        /// The log of the mean of the members' probabilities (softmax at T = 1).
        MeanProbs,
    }
}

mirror! {
    /// What a teacher's output holds.
    OutputKind => softlabel::teacher::OutputKind {
        /// Detect on the first batch: rows of non-negative values summing to 1 are probabilities; rows of
        /// non-positive values whose exponentials sum to 1 are log-probabilities; anything else logits.
        Auto,
        /// Raw scores (softmax not applied).
        Logits,
        /// Probabilities (softmax applied).
        Probs,
        /// Log-probabilities (log-softmax applied).
        LogProbs,
        /// (`import` only) The top k log-probabilities per row as {class: logprob}, normalised over all
        /// classes (vLLM, OpenAI-style APIs); stored as top-k labels at T = 1.
        #[value(alias = "topk-logprobs")]
        TopkLogProbs,
    }
}

mirror! {
    /// What a sequence teacher's output at position t is about.
    Targets => softlabel::store::Targets {
        /// Token t (a tagger): the label is the data's tag at t.
        Same,
        /// Token t + 1 (a language model): the label is the next token.
        Next,
    }
}

mirror! {
    /// How the learning rate changes over training.
    LrSchedule => softlabel::optim::LrSchedule {
        /// The base rate throughout.
        Constant,
        /// Cosine decay from the base rate to 0 over all steps (after warm-up).
        Cosine,
    }
}

mirror! {
    /// The optimizer.
    OptimizerKind => softlabel::config::OptimizerKind {
        /// SGD with momentum.
        Sgd,
        /// Adam (AdamW with --weight-decay).
        Adam,
    }
}

mirror! {
    /// Which epoch's weights a finished training run saves.
    Keep => softlabel::config::Keep {
        /// The last epoch's.
        Last,
        /// The epoch with the best validation metric (accuracy on labelled rows, else agreement with the
        /// teacher).
        Best,
    }
}

mirror! {
    /// The student network.
    StudentKind => softlabel::student::StudentKind {
        /// A multi-layer perceptron on the flat input.
        Mlp,
        /// Convolution blocks on the image-shaped input, then fully connected layers.
        Cnn,
        /// An embedding table for integer inputs (token ids, bytes): a bag or 1-D convolutions, then fully
        /// connected layers.
        Embed,
    }
}

mirror! {
    /// How an embed student pools its bag of embeddings.
    Bag => softlabel::student::Bag {
        /// The mean over the unmasked positions (fastText).
        Mean,
        /// The per-dimension maximum over the unmasked positions.
        Max,
        /// The positions' embeddings side by side (a window tagger over a sequence dataset's tokens).
        Concat,
    }
}

mirror! {
    /// How a feature map is stored.
    FeaturePool => softlabel::teacher::FeaturePool {
        /// Global average pooling to one value per channel.
        Avg,
        /// Global max pooling to one value per channel.
        Max,
        /// The whole map, flattened.
        None,
        /// The spatial attention map: the mean over channels of the squared values, one per position
        /// (what attention transfer, `train --at`, compares; 1/C of the whole map's bytes).
        Attention,
    }
}

mirror! {
    /// The logit loss.
    LossName => softlabel::config::train::LossName {
        /// Hinton et al.'s KD: KL to the softened teacher.
        Kd,
        /// Decoupled KD (Zhao et al. 2022): target-class and non-target parts, --dkd-alpha and --dkd-beta.
        Dkd,
        /// Jensen-Shannon divergence.
        Jsd,
        /// Total variation distance.
        Tvd,
        /// KL(student || teacher).
        ReverseKl,
    }
}
